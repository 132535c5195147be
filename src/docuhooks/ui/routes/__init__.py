"""The document platform's pages: one module per resource, each calling the platform's
services as the API's routes do."""
