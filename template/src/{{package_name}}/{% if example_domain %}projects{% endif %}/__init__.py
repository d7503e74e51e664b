"""Projects: the parent resource of the example domain."""
