"""Services: the layer between API routes and the engine."""
