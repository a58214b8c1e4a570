"""ChangeNotifier: no notification slips by between looking and waiting, timeouts and
cancellations leave nothing held."""

import asyncio

from raftlog.replication.notifier import ChangeNotifier


def test_a_change_between_looking_and_waiting_is_not_missed():
    async def scenario():
        notifier = ChangeNotifier()
        token = notifier.token()
        notifier.notify_all()  # happens after the waiter looked, before it waits
        await asyncio.wait_for(notifier.wait(token, 10.0), 1.0)  # returns at once

    asyncio.run(scenario())


def test_wait_until_sees_the_state_after_each_notification_and_times_out():
    async def scenario():
        notifier, state = ChangeNotifier(), {"value": 0}

        async def producer():
            for value in range(1, 4):
                await asyncio.sleep(0.005)
                state["value"] = value
                notifier.notify_all()

        task = asyncio.create_task(producer())
        assert await notifier.wait_until(lambda: state["value"] == 3, 2.0)
        await task
        assert not await notifier.wait_until(lambda: state["value"] == 4, 0.05)

    asyncio.run(scenario())


def test_cancelled_and_timed_out_waiters_block_nobody():
    async def scenario():
        notifier = ChangeNotifier()
        waiters = [asyncio.create_task(notifier.wait(notifier.token(), 0.001 * (i % 3))) for i in range(60)]
        await asyncio.sleep(0.001)
        for waiter in waiters:
            waiter.cancel()  # some are timing out at this very moment
        await asyncio.gather(*waiters, return_exceptions=True)
        notifier.notify_all()  # a lock-based notifier could block here for good
        flag = asyncio.get_running_loop().call_later(0.01, notifier.notify_all)
        assert not await notifier.wait_until(lambda: False, 0.05)
        flag.cancel()

    asyncio.run(scenario())
