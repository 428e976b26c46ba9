"""What the notebooks use around the models, and the headless runner that executes them.

profiles     each notebook's smoke | short | full sizes as data, with the reason for each, and `settings`, the
             one call of the cell after `parameters` (resolves the profile, prints what was chosen and why)
setups       the model and training configs a notebook builds from its sizes (presets with the profile laid over)
experiments  one experiment from training to its results file: fit within a budget, evaluate, record
training     train a family's run, or load it once finished; a run's EMA weights back from its checkpoint
budget       training within minutes (a probe, one re-plan in the run, planned vs actual), cost estimates,
             where the time went
plans        what a training plan is: the probe, schedules fitted to steps, the re-plan's arithmetic
results      the run -> results contract: records, sample banks, reading them back
findings     plain-text tables and verdicts computed from numbers
notebook     what an import cell calls: autoreload in interactive sessions
parameters   a notebook's `parameters` cell as the runner reads it: names, defaults, the types they allow
runner       `python -m lib.workbook` (`make workbook`): every notebook in order through papermill
"""
