-- Argo CD health check for SparkJobRunRef (emrspark.io/v1alpha1).
--
-- The operator mirrors a remote EMR Serverless Spark job run into status.conditions:
--   Succeeded=True            -> Healthy   (the run ended Success)
--   Failed=True / Stalled=True -> Degraded (the run ended Failed or Cancelled, or it does not exist)
--   anything else             -> Progressing (not started, running, cancelling, CancelFailed, ...)
-- Synced=False only says the last GetJobRun call failed; it never changes the outcome, so it is
-- shown in the message of a run that is still going.
--
-- Written for Argo CD's Lua 5.1 sandbox: no goto, no integer division, no os or io.

local hs = {}

local function find_condition(conditions, condition_type)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == condition_type then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

local function message_of(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

local job_run = "the job run"
if obj.spec ~= nil and obj.spec.jobRunId ~= nil then
  job_run = "job run " .. obj.spec.jobRunId
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to read " .. job_run
  return hs
end

-- A status written for an older spec says nothing about the current one.
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions
local succeeded = find_condition(conditions, "Succeeded")
local failed = find_condition(conditions, "Failed")
local stalled = find_condition(conditions, "Stalled")
local synced = find_condition(conditions, "Synced")
local reconciling = find_condition(conditions, "Reconciling")

if is_true(succeeded) then
  hs.status = "Healthy"
  hs.message = message_of(succeeded, job_run .. " succeeded")
  return hs
end

-- Failed and Cancelled runs set both Failed and Stalled; a run that does not exist sets Stalled
-- (reason JobRunNotFound). Their messages carry the service's stateChangeReason.
if is_true(failed) then
  hs.status = "Degraded"
  hs.message = message_of(failed, message_of(stalled, job_run .. " failed"))
  return hs
end
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message_of(stalled, job_run .. " cannot make progress")
  return hs
end

-- Not finished. A failing GetJobRun call is the most useful thing to show.
if synced ~= nil and synced.status == "False" then
  hs.status = "Progressing"
  local reason = synced.reason or "Unknown"
  hs.message = "GetJobRun is failing (" .. reason .. "): " .. message_of(synced, "no details")
  return hs
end

local state = status.state
if state == "CancelFailed" then
  hs.status = "Progressing"
  hs.message = "CancelFailed: " .. message_of(reconciling, "a cancel request failed; the run may still be alive")
  return hs
end

hs.status = "Progressing"
if state ~= nil and state ~= "" then
  hs.message = message_of(reconciling, job_run .. " is " .. state)
else
  hs.message = message_of(reconciling, "Waiting for the operator to read " .. job_run)
end
return hs
