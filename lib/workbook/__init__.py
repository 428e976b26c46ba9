"""What the notebooks use around the models, and the headless runner that executes them.

training  train a family's run, or load it once finished; a run's EMA weights back from its checkpoint
budget    training within minutes (a probe, one re-plan in the run, planned vs actual), cost estimates, where the
          time went
plans     what a training plan is: the probe, schedules fitted to steps, the re-plan's arithmetic
results   the run -> results contract: records, sample banks, reading them back, the family table
findings  plain-text tables and verdicts computed from numbers
runner    `python -m lib.workbook` (`make workbook`): every notebook in order through papermill
"""
