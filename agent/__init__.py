"""The triage agent: a LangGraph graph from incident to report."""
