"""The graph's nodes: one small function each, over TriageState, with TriageContext injected."""
