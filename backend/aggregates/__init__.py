"""Aggregates: rebuild an aggregate's state at any version by folding its recorded events.

Pure code, no I/O: `fold.fold(rows, reducers)` takes the aggregate's stored rows (in any order)
and returns every step with its markers (gaps, conflicts, out-of-order arrivals, duplicates,
dead-letter copies, reducer errors), the state at any step, version or time, per-step diffs and
what-if folds. Reducers come in three levels (`reducer_set.load_reducers`): the default deep
merge, declarative TOML rules (`reducer_rules`) and Python modules (`reducer_modules`).
See docs/reducers.md and the "Aggregates" section of docs/architecture.md.
"""
