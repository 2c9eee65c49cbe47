"""The course: automatic checks of the assignments (:mod:`.grading`)."""
