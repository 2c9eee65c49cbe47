"""Figures (:mod:`.plot`) and sliders that also render as a static grid in the book (:mod:`.widgets`)."""
