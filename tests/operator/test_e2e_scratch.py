import asyncio
from kubernetes import client
from fastswitch_operator import names

GVP = dict(group=names.GROUP, version=names.VERSION, plural=names.PLURAL)

async def test_scratch(api_server, kube, operator, wait_for, namespace):
    custom = client.CustomObjectsApi(kube)
    async with operator("--verbose") as runner:
        body = {"apiVersion": names.API_VERSION, "kind": names.KIND,
                "metadata": {"name": "demo", "namespace": namespace},
                "spec": {"model": {"preset": "tiny"}, "workers": {"replicas": 2, "gpus": 0}}}
        await asyncio.to_thread(custom.create_namespaced_custom_object, namespace=namespace, body=body, **GVP)
        key = ("apps/v1/statefulsets", namespace, "demo-workers")
        await wait_for(lambda: key in api_server.objects, "sts")
        await asyncio.sleep(2)
        fsc = api_server.objects[names.API_VERSION + "/" + names.PLURAL, namespace, "demo"].raw
        print(fsc)
    print(runner.output[-5000:])
