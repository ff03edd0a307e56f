import asyncio
import json

from kubernetes import client

from fastswitch_operator import names

GVP = dict(group=names.GROUP, version=names.VERSION, plural=names.PLURAL)

async def test_scratch(api_server, kube, operator, wait_for, namespace):
    out = []
    custom = client.CustomObjectsApi(kube)
    async with operator("--verbose") as runner:
        body = {"apiVersion": names.API_VERSION, "kind": names.KIND,
                "metadata": {"name": "demo", "namespace": namespace},
                "spec": {"model": {"preset": "tiny"}, "workers": {"replicas": 2, "gpus": 0}}}
        t0 = asyncio.get_running_loop().time()
        await asyncio.to_thread(custom.create_namespaced_custom_object, namespace=namespace, body=body, **GVP)
        await wait_for(lambda: api_server.live("apps/v1/statefulsets", namespace, "demo-workers"), "sts")
        out.append(("sts after", asyncio.get_running_loop().time() - t0))
        await wait_for(lambda: (api_server.live(f"{names.API_VERSION}/{names.PLURAL}", namespace, "demo") or {}).get("status"), "status")
        out.append(("status after", asyncio.get_running_loop().time() - t0))
        n = len(api_server.writes())
        r = await asyncio.to_thread(custom.patch_namespaced_custom_object_scale, name="demo", namespace=namespace, body={"spec": {"replicas": 4}}, _content_type="application/merge-patch+json", **GVP)
        out.append(("scale", r))
        await wait_for(lambda: api_server.live("apps/v1/statefulsets", namespace, "demo-workers")["spec"]["replicas"] == 4, "scaled")
        out.append(("scaled after", asyncio.get_running_loop().time() - t0))
        await asyncio.sleep(1)
        for w in api_server.writes()[n:]:
            out.append((w.method, w.url.path, json.dumps(w.data)[:300]))
        fsc = api_server.live(f"{names.API_VERSION}/{names.PLURAL}", namespace, "demo")
        out.append(json.dumps(fsc, indent=1))
    t1 = asyncio.get_running_loop().time()
    print("exit took", t1 - asyncio.get_running_loop().time())
    print("\n".join(map(str, out)))
