"""The test rig: plant simulator, board probes, embedded broker and the hardware/software-in-the-loop runner."""
