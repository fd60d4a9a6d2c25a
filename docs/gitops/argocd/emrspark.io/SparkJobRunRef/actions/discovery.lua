-- Offers one action in Argo CD's UI and CLI: "refresh" asks the operator to look at the job run
-- now (it also looks at an ended run once more).
local actions = {}
actions["refresh"] = {["disabled"] = false}
return actions
