// The whole public API.
#pragma once

#include <asyncmq/audit.hpp>
#include <asyncmq/backend.hpp>
#include <asyncmq/cli.hpp>
#include <asyncmq/client.hpp>
#include <asyncmq/codec.hpp>
#include <asyncmq/cron.hpp>
#include <asyncmq/env.hpp>
#include <asyncmq/error.hpp>
#include <asyncmq/identity.hpp>
#include <asyncmq/job.hpp>
#include <asyncmq/queue.hpp>
#include <asyncmq/repeat.hpp>
#include <asyncmq/security.hpp>
#include <asyncmq/settings.hpp>
#include <asyncmq/sync.hpp>
#include <asyncmq/task.hpp>
#include <asyncmq/worker.hpp>
