"""Low-level helpers shared by the steps, the L2 writer and the command-line tools.

Modules here import only numpy, astropy, asdf, roman_datamodels and
`romanimpreprocess.constants`/`romanimpreprocess.datamodels`; never a step, the
pipeline or the stpipe layer.
"""
