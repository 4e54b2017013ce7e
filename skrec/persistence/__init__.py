"""Safe persistence: save fitted estimators as JSON and tensors, load them without running code.

:func:`save` writes one file in the `safetensors <https://huggingface.co/docs/safetensors>`_
layout: an 8-byte header length, a JSON header, and the raw little-endian bytes of every
array. Everything that is not an array (the hyper-parameters, the fitted metadata such as
``history_`` or ``pruning_report_``, the structure of each torch module from
:func:`skrec.nn.module_config`) is JSON in the header's ``__metadata__``. One file holds one
estimator, or a *bundle*: a dict of named estimators (``{"encoder": enc, "model": model}``)
that :func:`load` returns as the same dict. The format is versioned (:data:`FORMAT_VERSION`)
and checksummed (a SHA-256 digest of the JSON metadata, the tensor index and the tensor
bytes), so a file of another format version, a truncated file, or a file modified after it
was written gets a :class:`ModelFileError` that says which.

**A checksum is not a signature**: whoever can write a file can recompute it. What makes an
untrusted file harmless is the loader, which treats every byte of the file as hostile input:

* **No code runs.** :func:`load` parses JSON and views the tensor bytes with
  ``numpy.frombuffer``: no pickle, no ``eval``, no import of a name found in the file.
  Estimator classes come from a registry (skrec's estimators, and classes registered with
  :func:`register_estimator`), torch modules from the registry of :mod:`skrec.nn.config`.
* **Only regular files are opened** (never a FIFO, a device or a directory, and without
  blocking on one), binary file objects are read in bounded chunks, and a text-mode file
  object is a ``TypeError``.
* **Every declared size is checked against the bytes present before anything is
  allocated**: the header against the file's size, each tensor's shape and dtype against its
  byte range (the ranges tile the data section exactly), each array's declared shape
  against the tensors that hold it (a sparse matrix's row pointers, a string array's
  offsets), and each module config against the tensors stored for it: the config is first
  built on PyTorch's ``meta`` device under a budget (:func:`skrec.nn.config.config_state_shapes`),
  and its implied shapes must equal the stored ones before the real module is built.
* **Memory and time are bounded** by :class:`LoadLimits` (overridable per call): the file's
  size, the header's size, the nesting depth of values, and the memory that decoding may
  allocate beyond the file's own bytes (JSON objects, strings, sparse conversions, module
  weights), by default 16 x the file's size + 64 MiB. Every tensor of a file is referenced
  exactly once, so one stored array cannot be decoded many times.
* **Every value is validated against its schema**: exact JSON types (no NaN or infinity
  constants, no lone surrogates, integers in the range of their dtype), exact keys of every
  tagged value, the invariants of a Mersenne-Twister state (624 words, ``0 <= pos <= 624``,
  ``has_gauss`` in {0, 1}, a finite cached Gaussian), sorted row pointers and in-range
  indices of sparse matrices, version numbers compared by type and value.
* **A loaded estimator is checked for consistency** before it is returned: its own
  ``_check_fitted_state()`` (the catalogue size against the module's item count and the
  popularity vector, ``precision_`` and ``device_``, ``module_`` present when fitted, the
  feature width, the pruning record, ...). See :mod:`skrec._fitted_state`.

Anything wrong is a :class:`ModelFileError` whose message names the field.

What is stored, generically (a new estimator attribute or a new module needs no change
here): the estimator's ``get_params(deep=False)`` and every public instance attribute that is
not a parameter (the fitted attributes, trailing underscore by convention). Values may be
``None``, bools, ints, floats (NaN and infinities included), strings, lists, tuples, dicts,
numpy arrays (numeric, bool, datetime, unicode strings, or objects holding such scalars),
numpy scalars, scipy sparse matrices, torch tensors, devices and dtypes,
``numpy.random.RandomState`` instances (their exact state) and registered torch modules
(config, ``state_dict`` and the module's ``_skrec_*`` attributes, such as the unpruned sizes
that pruning records), and registered estimators held by another one (a click classifier's
fitted :class:`~skrec.ctr.FieldEncoder`), stored as nested entries, built and checked as the
file's own (and counted in the nesting depth). Anything else, a callable for example, gets a
TypeError that names it.
Attributes with a leading underscore are private caches and are not stored. The item
features of a neural model are stored once: the ``item_features`` parameter is stored, and
the module's copy of them (the rows its ``FeatureProjection`` built at fit) is rebuilt from
it at load; only the rows that ``add_items`` appended are stored with the module.

A path is written atomically and safely: a temporary file created exclusively
(``O_CREAT | O_EXCL``, an unpredictable name in the target folder) is filled, flushed and
renamed over the target, so a planted symbolic link is never followed and the model file is
always a regular file.
"""

from __future__ import annotations

from ._api import load, save
from ._base import (
    FORMAT_VERSION,
    LoadLimits,
    ModelFileError,
    register_estimator,
    registered_estimators,
)

__all__ = [
    "FORMAT_VERSION",
    "LoadLimits",
    "ModelFileError",
    "load",
    "register_estimator",
    "registered_estimators",
    "save",
]
