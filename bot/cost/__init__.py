"""Cost control: the price table, the usage ledger, budgets and rules, the quota breaker, the chart."""
