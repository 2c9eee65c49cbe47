"""The benchmark: what is measured (:mod:`.protocol`: splits, cases, noise seeds, scoring), the
methods it compares (:mod:`.methods`), the command (:mod:`.run`, ``python -m deblur_edu.bench``),
hyper-parameter choice on the tune split (:mod:`.tune`), every method side by side
(:mod:`.compare`) and the reports (:mod:`.report`)."""
