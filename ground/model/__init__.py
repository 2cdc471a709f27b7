"""Ground-side model tools: files and manifests, INT8 quantization, the uplink, and ``ground model ...``.

Library entry points: :func:`~ground.model.files.build_manifest`, :func:`~ground.model.quantize.quantize_model`,
:func:`~ground.model.upload.upload_model`, the data sets of the bundled models in :mod:`ground.model.datasets`;
the command line is :mod:`ground.model.cli` (docs/models.md, docs/model-uplink.md).
"""
