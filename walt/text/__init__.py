"""Text conditioning: text encoders (a Flax T5, a built-in encoder) behind
one interface."""
