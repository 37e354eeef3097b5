"""qgov's development tools, shipped in the qgov wheel but outside the runtime package `governance`.

- `qgov_dev.devcluster`: the Kubernetes API emulator, its pod runner and the upstream control-plane
  launcher behind `qgov dev`;
- `qgov_dev.testing`: local PostgreSQL, IBM Cloud and IAM servers for tests, benchmarks and the demo;
- `qgov_dev/crds`, `qgov_dev/samples`: the CRDs and samples `qgov dev` installs, package data (in the
  source tree links to the repository's `crds/` and `samples/`; in a wheel, their files).

Their own third-party needs (PyYAML) come with the extra: `pip install 'qgov[dev]'`. The runtime
package never imports this one at module level; `qgov dev` imports it when it runs.
"""
