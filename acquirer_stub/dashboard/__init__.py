"""The operator's dashboard: KPIs and charts, live feed, drill-down, terminals, tokens, settlement, clearing."""
