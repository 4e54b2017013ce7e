"""The prediction side of :class:`~skrec.ctr.CTRClassifier`: logits, probabilities, labels and
the candidates of one request, all through the estimator's one inference set-up."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._data import slice_rows
from ._values import FieldBatch

__all__ = ["ClickPredictionMixin"]

#: Rows per forward pass at prediction.
_PREDICT_ROWS = 1 << 16


class ClickPredictionMixin:
    """``decision_function``, ``predict_proba``, ``predict`` and ``score_candidates`` of a
    fitted click classifier (its ``encoder_``, ``module_``, ``classes_`` and
    ``negative_sampling_rate``, served through ``_serving()``)."""

    def _raw_logits(self, batch: FieldBatch, shared: bool = False) -> np.ndarray:
        """The model's logits of encoded rows (float64; no negative-sampling correction).
        ``shared``: rows of one request, whose columns holding one value are computed once
        (:meth:`skrec.nn.CTRModel.forward_shared`)."""
        n = len(batch)
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        tensors = self._with_counts(batch).to_torch()
        with self._serving() as setup:
            forward_shared = getattr(setup.module, "forward_shared", None)
            if shared and n <= _PREDICT_ROWS and forward_shared is not None:
                ids = tensors["ids"].to(setup.device)
                inputs = {k: v.to(setup.device) for k, v in tensors.items()}
                inputs["shared"] = (ids == ids[:1]).all(dim=0)
                return forward_shared(**inputs).double().cpu().numpy()
            for start in range(0, n, _PREDICT_ROWS):
                stop = min(start + _PREDICT_ROWS, n)
                inputs = slice_rows(tensors, start, stop, batch.n_multi, setup.device)
                out[start:stop] = setup.module(**inputs).float().cpu().numpy()
        return out

    def _logits(self, batch: FieldBatch, shared: bool = False) -> np.ndarray:
        logit = self._raw_logits(batch, shared)
        if self.negative_sampling_rate != 1.0:
            logit = logit + np.log(float(self.negative_sampling_rate))
        return logit

    def decision_function(self, X) -> np.ndarray:
        """The log-odds of a click (corrected for ``negative_sampling_rate``).

        Parameters
        ----------
        X : DataFrame, array-like or sparse matrix
            Impressions, of the form seen at fit (DataFrame columns are matched by name).

        Returns
        -------
        logit : ndarray of shape (n_samples,)
            Positive for a predicted click (``classes_[1]``).
        """
        check_is_fitted(self)
        return self._logits(self._encode(X))

    def predict_proba(self, X) -> np.ndarray:
        """Click probabilities.

        Parameters
        ----------
        X : DataFrame, array-like or sparse matrix
            Impressions, of the form seen at fit.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
            ``P(classes_[0])`` and ``P(classes_[1])`` (the click) per row.
        """
        return _proba(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        """The more probable class of each row.

        Parameters
        ----------
        X : DataFrame, array-like or sparse matrix
            Impressions, of the form seen at fit.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            ``classes_[1]`` where the click probability exceeds 0.5.
        """
        logit = self.decision_function(X)  # checks that the model is fitted
        return self.classes_[(logit > 0).astype(np.int64)]

    def score_candidates(self, request, candidates) -> np.ndarray:
        """Click probabilities of ``N`` candidate ads for one request, in one batched call.

        The request's fields (user, context) are encoded once and shared by every
        candidate; the candidates' rows hold the other fields (the ad's). One forward pass
        scores them all.

        Parameters
        ----------
        request : dict, one-row DataFrame or sparse row
            The request's fields: ``{column: value}`` for a model fitted on a DataFrame
            (a list for a multi-valued column), ``{column index: value}`` for an array, one
            sparse row for a sparse matrix (see :meth:`FieldEncoder.transform_request`).
        candidates : DataFrame, array-like or sparse matrix
            One row per candidate with the other columns.

        Returns
        -------
        proba : ndarray of shape (n_candidates,)
            The click probability of each candidate, in order (sort them to rank).

        Examples
        --------
        >>> import pandas as pd
        >>> from skrec import CTRClassifier
        >>> X = pd.DataFrame({"user": [1, 2, 1, 2] * 50, "ad": [7, 7, 8, 9] * 50})
        >>> y = [1, 0, 0, 1] * 50
        >>> clf = CTRClassifier(max_iter=1, random_state=0).fit(X, y)
        >>> clf.score_candidates({"user": 1}, pd.DataFrame({"ad": [7, 8, 9]})).shape
        (3,)
        """
        check_is_fitted(self)
        batch = self.encoder_.transform_request(request, candidates)
        return _proba(self._logits(batch, shared=True))[:, 1]

    # ------------------------------------------------------------------ export hooks
    def _serving_graph(self, precision: str | None = None):
        """The click graph of :mod:`skrec.serving`'s exports (see :class:`ClickGraph`)."""
        from ._export import ClickGraph

        return ClickGraph(self, precision)

    def _graph_inputs(self, X) -> dict[str, np.ndarray]:
        """The click graph's inputs for ``X`` (see :func:`skrec.serving.graph_inputs`)."""
        from ._export import graph_inputs

        return graph_inputs(self, X)


def _proba(logit: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    p = expit(logit)
    return np.column_stack([1.0 - p, p])
