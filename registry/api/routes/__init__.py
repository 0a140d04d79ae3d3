"""The service's endpoints, one module per area; ``app.create_app`` includes every router."""
