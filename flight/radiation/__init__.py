"""Soft-error mitigation for flightd (issue 15): weights in memory flightd owns, scrubbed against
per-block CRCs and repaired from the verified model file (:mod:`flight.radiation.weights`,
:mod:`flight.radiation.scrubber`), redundant execution (:mod:`flight.radiation.redundancy`) and an
algorithm-based check of the final layer (:mod:`flight.radiation.abft`). See docs/radiation.md."""
