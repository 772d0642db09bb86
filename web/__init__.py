"""Static files of the browser test page, shipped as package data (push_service.web)."""
