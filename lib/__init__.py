"""A research workbook for deep generative models on CIFAR-10.

`lib` holds what the notebooks share: the data layer (`data`), run folders and records (`runs`), the one
training loop (`train`), models (`models`) and figures (`viz`). Notebooks under `notebooks/` tell the story.
"""
