"""Ground floor: the clock, errors, logging, retry timing, states and kinds."""
