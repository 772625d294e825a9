"""ess's pytest plugin: fixtures and the backend contract suite for plugin authors.

Opt in from the conftest.py at the root of your tests, as with pytest's own ``pytester``::

    pytest_plugins = ["ess.testing"]                      # a backend of your own
    pytest_plugins = ["ess.testing", "ess_ec2.testing"]   # code that talks to EC2 (moto)

It is not an auto-loaded ``pytest11`` entry point: installing ess (a command-line tool)
must not add fixtures, imports and start-up time to every other project's pytest run.

Fixtures:

* ``ess_home``: ESS_HOME in a temporary folder, so state and known_hosts stay out of ~.
* ``ssh_node``: a factory of in-process SSH servers on 127.0.0.1 (:mod:`ess.testing.sshd`)
  that accept a generated cluster key; stopped after the test.

AWS fixtures (``fake_aws``, ``moto_server``, ``moto_endpoint``) live with the EC2 plugin in
:mod:`ess_ec2.testing`. The backend contract suite is :mod:`ess.testing.contract`; an
in-memory backend to exercise the core with is :mod:`ess.testing.memory`; a real OpenSSH
``sshd`` is :mod:`ess.testing.openssh`.
"""

from __future__ import annotations

from .fixtures import SshNodes, ess_home, ssh_node

__all__ = ["SshNodes", "ess_home", "ssh_node"]
