"""uservec online service: FastAPI over an ONNX + FAISS bundle. Never imports torch.

Run with ``uservec serve --bundle PATH`` (or :func:`service.server.serve`); build an app for tests
with :func:`service.app.create_app`.
"""
