package console

import (
	"encoding/json"

	"github.com/medmesh/medmesh/node/api"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(api.EmptyLists(v)) }
