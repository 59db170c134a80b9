"""Read-outs and probes of what the models compute, MAC counts, result tables and plots.

* ``attention_focus``: where a trained synthetic-task LM attends, per layer and per channel
  of the FAVOR+S grid, read from the intermediates its forward pass sows.
* ``attention_sharpness``, ``kernel_contrast``: small probes of FAVOR+S attention.
* ``macs``: multiply-accumulates per sample of the wide networks (Table A2).
* ``report``: the final metrics of finished runs as a table, a plot and JSON.

Each module with a command line runs as ``python -m mimojax.analysis.<name>``.
"""
