"""The book's measurements, one module per question a chapter asks; each is a command
(``python -m deblur_edu.experiments.NAME``) that prints a table and writes JSON."""
