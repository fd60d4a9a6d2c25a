-- Sets emrspark.io/refresh-requested-at to the current UTC time. Any new value makes the
-- operator observe the run at once (inside its rate limit) and record the value in
-- status.lastHandledRefreshAt; the rest of the object is left as it is.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["emrspark.io/refresh-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
