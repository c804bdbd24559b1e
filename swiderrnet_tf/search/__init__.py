"""The SWideRNet grid search: search spaces, a resumable results table, Pareto fronts."""
