"""validate, plan, graph, schema."""
