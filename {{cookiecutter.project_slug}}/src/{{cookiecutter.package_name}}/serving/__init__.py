"""Serving: the BentoML service, the model store it loads from, and the prediction log."""
