"""QA synthesis: the prompt-based agent that grows hard, verified multi-hop questions (`asearcher synth`)."""
