"""The names ess accepts where a value becomes a path, a tag or a command-line argument.

One rule each, decided here for every backend: a cluster name becomes a folder name
(local and hosts state) and a tag value (EC2), and a login name becomes an argument to
ssh and to the nodes' own programs. Settings declare them as a :class:`SettingSpec`
``pattern``, and the core checks it when settings are resolved, before anything starts.
"""

from __future__ import annotations

import re

#: Letters, digits, '.', '_' and '-', starting with a letter or digit, 1 to 64 characters:
#: no '/', no '..' on its own, nothing a shell or a path would read specially.
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CLUSTER_NAME_HELP = "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"

#: A POSIX-style login name (useradd's limit is 32): never starting with '-', which ssh
#: and the nodes' programs would read as an option.
USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")
USERNAME_HELP = "use a login name: 1 to 32 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
