-- Argo CD health check for modelrollout.io/ModelRollout (docs/gitops.md).
--
-- status.phase decides: Succeeded is Healthy; Pending, Initializing, Progressing,
-- Promoting and RollingBack are Progressing; Paused is Suspended; RolledBack and Failed
-- are Degraded. A spec the operator refused (condition Ready=False, reason InvalidSpec)
-- is Degraded whatever the phase. Until the operator has seen the latest spec
-- (status.observedGeneration < metadata.generation) the rollout is Progressing: a new
-- commit is not judged by the previous revision's outcome. The message is the phase and
-- the operator's status.message.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(phase, message)
  if message ~= nil and message ~= "" then
    return phase .. ": " .. message
  end
  return phase
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelrollout operator to pick the rollout up"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the modelrollout operator to observe generation " .. generation
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "False" and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = "InvalidSpec: " .. (ready.message or "")
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Pending" or phase == "Initializing" or phase == "Progressing"
    or phase == "Promoting" or phase == "RollingBack" then
  hs.status = "Progressing"
elseif phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. phase .. " (is this health check older than the operator?)"
  return hs
end
hs.message = describe(phase, status.message)
return hs
