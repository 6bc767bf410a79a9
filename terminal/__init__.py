"""pos-terminal: the Textual PIN pad of shebao-pos."""
