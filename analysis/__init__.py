"""Reading run directories back and reporting on them: `runs` (config.yaml, TensorBoard events,
checkpoint steps), `curves` (runs on a common step grid), `stats` (aggregates and bands through
rliable), `figures` (PNG), `summary` (summary.json), `html` (index.html), `build` (the whole report)
and `video` (clips of a checkpoint's play). `runs` and `extras` need only the core dependencies;
the rest need the `[report]` extra."""
