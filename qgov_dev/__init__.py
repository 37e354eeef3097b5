"""qgov's development tools, shipped in the qgov wheel but outside the runtime package `governance`.

- `qgov_dev.devcluster`: the Kubernetes API emulator, its pod runner and the upstream control-plane
  launcher behind `qgov dev`;
- `qgov_dev.testing`: local PostgreSQL, IBM Cloud and IAM servers for tests, benchmarks and the demo;
- `qgov_dev.data`: the CRDs and samples `qgov dev` installs (the repository's `crds/` and `samples/`,
  carried as package data).

Their own third-party needs (PyYAML) come with the extra: `pip install 'qgov[dev]'`. The runtime
package never imports this one at module level; `qgov dev` imports it when it runs.
"""
