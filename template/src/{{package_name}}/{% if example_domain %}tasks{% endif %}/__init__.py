"""Tasks: the child resource of the example domain, each in one project."""
