"""Small ASGI/WSGI apps the tests run in-process or under a real uvicorn."""
