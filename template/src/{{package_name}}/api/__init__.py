"""HTTP machinery shared by the routers: errors, middleware, pagination, health."""
