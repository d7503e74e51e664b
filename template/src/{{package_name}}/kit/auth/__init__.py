"""Who is calling, and what they may do.

Every way of authenticating a request ends in a `Principal`: an OpenID provider's token
(`oidc`), the service's own users (`password`), or nobody at all when the service has
no authentication. Routes ask for permissions, never for a way of authenticating.
"""
