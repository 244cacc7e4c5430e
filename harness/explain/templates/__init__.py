"""Built-in prompt templates of the LLM explainer, one `<name>.txt` each (shipped as package data)."""
