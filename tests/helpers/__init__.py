"""What tests share: builders of objects and configs, running sandboxes, fake and hostile engines,
the in-process CLI, pollers. Test modules import from here, never from each other; conftests
only declare fixtures built from these.

    cli        run the `slots` CLI in-process (``run_cli``, ``Result``)
    config     slots.yaml documents, kubeconfigs, certificates (``valid``, ``CONFIG``,
               ``write_config``, ``kubeconfig_doc``, ``self_signed``)
    objects    Kubernetes objects as the pure rules read them (slot Deployment, flag Service),
               a slot's state (``slot``)
    deploy     a deploy planned on paper (``current``, ``plan``)
    guard      the guard's settings for its rule and loop tests (``SETTINGS``)
    wait       polling a condition with a deadline (``wait_for``, ``poll``)
    sandbox    the whole sandbox as an operator drives it (``Sandbox``, ``started``, ``clean_env``)
    fixtures   the pytest plugin of sandbox fixtures (``sandbox``, ``two_warm_slots``...)
    apiserver  the sandbox API server alone, in-process (``start_sandbox``, object builders)
    kubectl    the real kubectl against that API server (``Kubectl``)
    modelservers  sandbox model servers in-process (``model_servers``)
    traffic    production requests in the background (``ProductionTraffic``)
    engines    a scriptable fake engine behind httpx.MockTransport (``FakeEngine``...)
    hostile    TCP peers that misbehave on a real socket (``hostile``, ``silent``, ``respond``...)
    matrix     the reliability fault matrix (cases and faults)
    harness    running one matrix case against a sandbox and checking the invariants
"""
