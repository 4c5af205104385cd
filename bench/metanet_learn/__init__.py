"""Does the generated ``MetaNetwork`` learn, on every kind of weight space? (issue 22)

    .venv/bin/python -m bench.metanet_learn                 # every case, results JSON
    .venv/bin/python -m bench.metanet_learn --quick         # tiny sizes (the test suite)
    .venv/bin/python -m bench.metanet_learn --cases scaled_mlp,gl_resmlp --models default

For each weight space (a spec of :data:`CASES`), random networks of that space are drawn
(Gaussian weights, each tensor of each network with its own scale, log-uniform over a
factor 4, so the functions vary), and the target is a property of the network's
*function* on fixed probe inputs: the log of the standard deviation of its first output
over the probes. A group element of the declared symmetry leaves the function unchanged,
so the target is exactly invariant (checked on every case with the generated
``sample_group_element`` / ``act``, float64). Models are trained on it for a fixed budget
(Adam, fixed steps and batch); the score is the test MSE divided by the variance of the
test targets (predicting the mean gives about 1.0).

Models: ``default`` is ``space.MetaNetwork(1, hidden, depth, 1)`` with every option left
at its default; ``before`` the same with ``gram=False, pool_hidden=None``, which computes
what the defaults computed before issue 22 (``before.json``: that run, made with the code
of then, one seed); ``degree2`` the default with ``degree2=True``; ``mlp`` a flat MLP on
the standardized, flattened weights (the baseline).
"""
