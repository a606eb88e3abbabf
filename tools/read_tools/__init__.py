"""The read-only tools an LLM may call (agent/explore): an allow-list of named functions with validated
arguments. Nothing here can write: the sources they get are read ports, and a name not in the
registry is refused before anything is called."""
