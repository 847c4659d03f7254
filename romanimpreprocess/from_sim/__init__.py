"""L1 exposures from external truth images (the legacy ``from_sim`` entry point).

`romanimpreprocess.from_sim.sim_to_isim.run_config` turns an OpenUniverse-style truth
image into an L1 file with the physics of the given calibration files; the
pure-array parts are in `romanimpreprocess.from_sim.ramps`.
"""
