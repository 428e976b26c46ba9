"""What two or more notebooks (or the CLI) use around the models, and the headless runner that executes them. A
notebook's own configs, analysis and figures live in its cells.

profiles     each notebook's sizes in every profile as plain data (one dict per notebook, each size with its reason)
             and `settings`, the one call of the cell after `parameters` (resolves the profile, prints why)
budget       `fit`: train a run within minutes (a probe turns them into steps, every schedule complete) or for its
             steps, or load it once finished; planned vs actual; cost estimates; where the time went
training     train a family's run or load it; a run's EMA weights back from its checkpoint
results      the run -> results contract: records, sample banks, reading them back
findings     plain-text tables and the paired gap of two bounds on the same images
notebook     what an import cell calls: autoreload in interactive sessions
parameters   a notebook's `parameters` cell as the runner reads it: names, defaults, the types they allow
runner       `python -m lib.workbook` (`make workbook`): every notebook in order through papermill
"""
