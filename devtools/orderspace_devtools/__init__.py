"""Development tools of orderspace-pipelines, not part of the product: the `demo` and `dev` commands
(`local_stack`), which run the product against the sandbox Orderspace API (`orderspace_sandbox`).

Installed from the repository by the `dev` extra (`make install`); the product's CLI reaches them only through
its `demo`, `dev` and `sandbox` subcommands, and says how to install them when they are absent.
"""
